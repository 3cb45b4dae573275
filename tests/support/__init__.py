"""What tests share, one of each (import from the module that holds it):

- waiting.py   `wait_for` / `wait_for_async`: wait for a condition, with a deadline
- clock.py     `FakeClock`: time that moves only when the test moves it
- claims.py    poll answers and parsed claims of each lane (watcher, automation)
- servers.py   fake servers on loopback: `Loopback` (a handler per connection) and
               `HostileServer` (scripted raw replies), with their replies and handlers
- devserver.py a device's requests to the dev server (poll, heartbeat, complete, …)
- agent.py     the agent as a process: its environment, fake CLIs, its journal and status
- processes.py whether a process (or a process group) is still alive
- logs.py      `captured_logs`: every line logged meanwhile, as its fields
"""
