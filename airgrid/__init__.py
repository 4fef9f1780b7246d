"""The shared core: what every component needs and nothing else.

Wire format, durations, measurement names, errors, config checks and sd_notify. It imports
only the standard library and third-party packages, never another package of this project.
"""
