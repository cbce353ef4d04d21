"""``python -m course_tools.grading <command>``: see `course_tools.grading.cli`."""

import sys

from course_tools.grading.cli import main

sys.exit(main())
