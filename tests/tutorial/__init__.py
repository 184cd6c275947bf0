"""The README's tutorial app ("todo"): its modules are the README's code blocks, verbatim.

tests/test_docs.py checks that each ``# todo/<module>.py`` block of README.md equals the
module here, and runs the tutorial's shell session against these models.
"""
