"""``python manage.py aura <command>``: AURA's operator CLI.

Each app contributes commands from its own ``cli.py``: a ``COMMANDS`` dict of
name -> (help, add_arguments(parser), handle(options, out)). Errors raise
CommandError, which Django prints to stderr with a non-zero exit.
"""

from importlib import import_module

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, no_translations


def _commands():
    found = {}
    for config in apps.get_app_configs():
        try:
            module = import_module(f"{config.name}.cli")
        except ModuleNotFoundError as error:
            if error.name != f"{config.name}.cli":
                raise
            continue
        found.update(module.COMMANDS)
    return found


class Command(BaseCommand):
    help = "AURA operator commands: user-create, user-show, and those the apps add."

    def add_arguments(self, parser):
        subparsers = parser.add_subparsers(dest="aura_command", metavar="<command>", required=True)
        for name, (help_text, add_arguments, _handle) in sorted(_commands().items()):
            add_arguments(subparsers.add_parser(name, help=help_text))

    @no_translations  # the command line speaks English, whatever language a request left active in this thread
    def handle(self, *args, aura_command, **options):
        _help, _add, handle = _commands()[aura_command]
        try:
            handle(options, self.stdout)
        except CommandError:
            raise
        except ValueError as error:
            raise CommandError(str(error)) from None
