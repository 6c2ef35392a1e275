"""The pictures of the teacher-selection evidence: per setting, the teacher weights and the
learners' top-1 per epoch."""

from __future__ import annotations

from codistill.commands.evidence_policy.runs import Evidence
from codistill.commands.evidence_policy.variants import OFFLINE, ONLINE, POOR_PEER, SETTING_NAMES
from codistill.evidence import plot_curves, plotting_available


def plot(evidence: Evidence) -> None:
    """``OUT/policy_<setting>.png`` per setting that ran: the teacher weights and the learners'
    top-1 per epoch (mean over seeds); one line instead when matplotlib is missing."""
    if not plotting_available():
        print("plots SKIPPED: matplotlib is not installed (pip install -e '.[evidence]')", flush=True)
        return
    accuracy = {OFFLINE: "top-1 of the student", ONLINE: "mean top-1 of the peers",
                POOR_PEER: f"mean top-1 of the peers but {evidence.args.poor_peer}"}
    for setting, rows in evidence.rows.items():
        if rows:
            path = evidence.args.out / f"policy_{SETTING_NAMES[setting].replace('-', '_')}.png"
            plot_curves(path, f"{setting}: mean weight per teacher and top-1 per epoch, "
                              f"{len(evidence.args.seeds)} seed(s)",
                        {name: row["curves"] for name, row in rows.items()}, accuracy[setting])
            print(f"plot: {path}", flush=True)
