"""The one exception the study raises for a user's mistake: the CLI prints it as one line, exit 2."""


class StudyError(Exception):
    """Bad input (an unknown name, an unusable results directory, a batch the data cannot fill)."""
