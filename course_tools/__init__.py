"""Instructor tooling for the CNN course.

grading    build the student release, make the example submissions, autograde them,
           feedback and grade export (`python -m course_tools.grading {release,examples,demo}`)
feedback   the nbgrader preprocessor that keeps hidden tests out of the feedback HTML
execute    re-execute notebooks in place and stamp them with the code they ran (`make lectures`)
"""
