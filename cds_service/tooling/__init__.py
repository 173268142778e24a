"""Tools for integrators and testers: the fixture library, replay, validation and loading.

Nothing here serves HTTP; the `cds-service` subcommands in `cds_service.commands` are thin
wrappers around these modules.
"""
