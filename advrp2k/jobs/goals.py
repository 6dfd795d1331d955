"""What an evaluation's attacks aim at: the threat model's goal (ticket switching's siblings) and
the data's sibling SKUs offered to attacks as target hints."""
from __future__ import annotations

from advrp2k.core.threat import threat_model
from advrp2k.jobs.job import Job, JobData


def threat_goal(job: Job, prep: JobData):
    """The threat model's goal: ticket switching's siblings, else None (any wrong class)."""
    if threat_model(job.threat).goal != "sibling":
        return None
    from advrp2k.eval.siblings import SiblingGoal

    return SiblingGoal(prep.scan.classes, prep.scan.attributes)


def data_siblings(prep: JobData):
    """Each SKU's siblings by the data's attribute table (target hints for attacks that use them), or None."""
    if not prep.scan.attributes:
        return None
    from advrp2k.eval.siblings import sibling_table

    return sibling_table(prep.scan.classes, prep.scan.attributes)
