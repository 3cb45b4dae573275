"""Run the real tray under a display, print its menu as JSON, then click through it.

Started by test_tray.py in its own process (pystray binds the display on
import). Prints one JSON line per step; the test reads them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from device_agent.config import Paths
from device_agent.desktop.tray import TrayApp, make_icon


def menu_as_data(menu: Any) -> list[dict[str, Any]]:
    return [
        {
            "text": item.text,
            "enabled": item.enabled,
            "submenu": menu_as_data(item.submenu) if item.submenu else [],
        }
        for item in menu.items
    ]


def find(menu: Any, text: str) -> Any:
    for item in menu.items:
        if item.text == text:
            return item
    raise LookupError(text)


def main() -> None:
    control, root = Path(sys.argv[1]), Path(sys.argv[2])
    app = TrayApp(control, Paths(root / "config", root / "state", root / "logs"))
    icon, _stopped = make_icon(app)

    def setup(icon: Any) -> None:
        icon.visible = True
        print(json.dumps({"menu": menu_as_data(icon.menu), "state": app.state}), flush=True)
        run_now = find(icon.menu, "Run now").submenu
        run_now.items[0](icon)
        find(icon.menu, "Pause")(icon)
        print(json.dumps({"clicked": True}), flush=True)
        # Without a system tray on the display pystray's X loop never sees its window go,
        # so icon.stop() would not return: leave at once, output flushed.
        os._exit(0)

    icon.run(setup=setup)


if __name__ == "__main__":
    main()
