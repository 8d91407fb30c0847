"""``forgeml batch``: many conversions (models × targets × quantize modes from a YAML job file) as Ray
tasks — on a Ray instance embedded in the process by default, or on a cluster — with one summary.

    spec       the job file: YAML → typed records, errors as FILE:LINE: key: problem
    jobs       expansion into jobs with stable ids and input hashes
    job        the job function (one forgeml.convert into OUT/jobs/<id>, a small JobRecord back)
    record     JobRecord, saved per job; what --resume reads
    cluster    none | local | auto | ray://: start or join Ray, node resources, unschedulable jobs
    scheduler  one task per job, fresh workers, bounded retries for lost workers only
    summary    summary.json / .md / .html, junit.xml, the exit code
    run        run_batch: all of the above in order

Ray is imported only by ``cluster`` and ``scheduler``, and only when a batch runs on it.
"""

from forgeml.batch.run import BatchOptions, BatchResult, run_batch  # noqa: F401
