"""Grading on Dask's distributed scheduler: a LocalCluster of separate worker processes writing
one PostgreSQL gradebook, and the refusal of an SQLite gradebook across machines."""

from __future__ import annotations

import pytest
from test_parallel import RIGHT, WRONG, assert_tiny_scores
from test_postgres import new_database, postgres, postgres_course  # noqa: F401 (fixture)

from course_tools.grading import synthetic
from course_tools.grading.course import GradingError
from course_tools.grading.distributed import autograde_distributed, check_cluster


class _Cluster:
    """A stand-in Dask client whose workers run on the given hosts."""

    def __init__(self, hosts):
        self.hosts = hosts

    def run(self, function):
        return {f"tcp://worker-{i}": host for i, host in enumerate(self.hosts)}


def test_sqlite_gradebook_is_refused_when_workers_are_elsewhere():
    import socket

    here = socket.gethostname()
    sqlite = "sqlite:////course/gradebook.db"
    assert check_cluster(_Cluster([here, here]), sqlite) == [here]
    with pytest.raises(GradingError, match="PostgreSQL"):
        check_cluster(_Cluster([here, "grader-2"]), sqlite)
    server = "postgresql+psycopg://grader@db/course"
    assert check_cluster(_Cluster([here, "grader-2"]), server) == sorted([here, "grader-2"])


@pytest.mark.slow
def test_dask_local_cluster_grades_into_postgres(postgres, tmp_path):  # noqa: F811
    from distributed import Client, LocalCluster

    course = postgres_course(tmp_path / "course", new_database(postgres))
    synthetic.tiny_assignment(course)
    answers = {"ann": RIGHT, "bob": WRONG, "cy": RIGHT, "dee": RIGHT}
    for student, answer in answers.items():
        synthetic.submit(course, "tiny", student, answer)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        run = autograde_distributed(course, "tiny", client=client, progress=False)
        again = autograde_distributed(course, "tiny", client=client, progress=False)
    assert not run.failures, run.failures
    assert len({r.worker for r in run.results}) == 2, "both worker processes graded"
    assert sum(r.warm_kernel for r in run.results) >= len(answers) - 2
    assert_tiny_scores(course, answers)
    assert not again.results, "a second run finds everything graded"
