from django.core.management.base import BaseCommand, CommandError

from providers.demo import DemoError, run


class Command(BaseCommand):
    help = ("Run the server beside the providers' loopback emulator, with demo provider configs and a demo "
            "client key, and print curl lines to try it with no provider account (`make demo`). Ctrl-C stops it.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="the server's address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="the server's port (default 8000)")
        parser.add_argument("--emulator-port", type=int, default=9100,
                            help="the emulator's port, on 127.0.0.1 (default 9100)")

    def handle(self, host, port, emulator_port, **options):
        def write(text: str) -> None:
            self.stdout.write(text)
            self.stdout.flush()

        try:
            run(host, port, emulator_port, write)
        except DemoError as exc:
            raise CommandError(str(exc)) from None
