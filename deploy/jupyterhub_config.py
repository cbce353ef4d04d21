"""JupyterHub for a class of the CNN course: one JupyterLab per Unix account, nbgrader's exchange.

    sudo .venv/bin/jupyterhub -f deploy/jupyterhub_config.py

Run it as root from the course's virtual environment (the one `make setup` creates): the hub starts
each user's JupyterLab from this environment, as that user (JupyterHub's LocalProcessSpawner), so
the accounts must exist on the machine. Its proxy, `configurable-http-proxy`, comes from npm
(`npm install -g configurable-http-proxy`, or `npm ci --prefix deploy`, which this file finds).

The class is described by environment variables (or edit the defaults below):

    CNN_COURSE_CLASS_DIR    where the exchange and the role configurations live (/srv/cnn-course)
    CNN_COURSE_INSTRUCTORS  comma-separated accounts that grade; the first one owns the exchange
    CNN_COURSE_STUDENTS     comma-separated student accounts

At start-up the hub creates ``$CNN_COURSE_CLASS_DIR/exchange`` and the two Jupyter configuration
directories of `course_tools.classroom` (``jupyter/student``, ``jupyter/instructor``); each
user's server reads the one of its role (``JUPYTER_CONFIG_PATH``). An instructor's course is the
clone of this repository in ``~/cnn-course``. Users log in with their Unix password (PAM); put an
OAuthenticator here for single sign-on. See docs/instructor-guide.md.
"""

import os
import sys
from pathlib import Path

from course_tools import classroom

c = get_config()  # noqa: F821 (injected by JupyterHub when it loads this file)


def _accounts(variable: str) -> list[str]:
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


CLASS_DIR = Path(os.environ.get("CNN_COURSE_CLASS_DIR", "/srv/cnn-course"))
INSTRUCTORS = _accounts("CNN_COURSE_INSTRUCTORS")
STUDENTS = _accounts("CNN_COURSE_STUDENTS")
COURSE_DIR = "~/cnn-course"  # each instructor's clone of the course repository
EXCHANGE = CLASS_DIR / "exchange"

if not INSTRUCTORS:
    sys.exit("deploy/jupyterhub_config.py: set CNN_COURSE_INSTRUCTORS (and CNN_COURSE_STUDENTS)")

CLASS_DIR.mkdir(parents=True, exist_ok=True)
CLASS_DIR.chmod(0o755)
classroom.create_exchange(EXCHANGE, instructor=INSTRUCTORS[0])
ROLE_DIRS = classroom.write_hub_configs(CLASS_DIR, EXCHANGE, COURSE_DIR)

# --- who may log in --------------------------------------------------------------------------
c.Authenticator.allowed_users = set(INSTRUCTORS + STUDENTS)
c.JupyterHub.load_groups = {"instructors": {"users": INSTRUCTORS}}

# --- each user's JupyterLab ------------------------------------------------------------------
VENV_BIN = str(Path(sys.executable).parent)
c.Spawner.cmd = [os.path.join(VENV_BIN, "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.environment = {
    # nbgrader runs `alembic` from PATH when it creates a gradebook.
    "PATH": os.pathsep.join([VENV_BIN, "/usr/local/bin", "/usr/bin", "/bin"]),
    "LANG": "C.UTF-8",
}
# Passed on from the hub's own environment when set (a test run's PYTHONPATH, thread limits).
c.Spawner.env_keep = ["JUPYTERHUB_SINGLEUSER_APP", "PYTHONPATH", "OMP_NUM_THREADS"]
# A JupyterLab with PyTorch takes a while to start on a busy class server.
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180


def _configure_role(spawner):
    """Students and instructors read different Jupyter configurations (course_tools.classroom)."""
    role = "instructor" if any(g.name == "instructors" for g in spawner.user.groups) else "student"
    config_path = classroom.role_config_path(role, ROLE_DIRS)
    spawner.environment = {**spawner.environment, "JUPYTER_CONFIG_PATH": config_path}


c.Spawner.pre_spawn_hook = _configure_role

# --- the proxy -------------------------------------------------------------------------------
_local_proxy = Path(__file__).resolve().parent / "node_modules" / ".bin" / "configurable-http-proxy"
if _local_proxy.exists():
    c.ConfigurableHTTPProxy.command = [str(_local_proxy)]

# JupyterHub's database and cookie secret: in the class directory, readable by root only.
_state = CLASS_DIR / "hub-state"
_state.mkdir(mode=0o700, exist_ok=True)
c.JupyterHub.db_url = f"sqlite:///{_state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(_state / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(_state / "jupyterhub-proxy.pid")
