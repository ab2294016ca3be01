"""python -m tests.emulator --port 9100: serve every emulated provider on loopback."""

import argparse

import uvicorn

from tests.emulator.app import EmulatorApp


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback emulator of the AI providers' HTTP APIs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    app = EmulatorApp()
    root = f"http://{args.host}:{args.port}"
    for name, url in app.base_urls(root).items():
        key = app.emu.keys.get(name, "")
        print(f"{name:<11} base_url={url}" + (f"  api_key={key}" if key else ""), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", loop="uvloop", http="httptools")


if __name__ == "__main__":
    main()
