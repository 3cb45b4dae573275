"""What tests share, one of each (import from the module that holds it):

- waiting.py   `wait_for` / `wait_for_async`: wait for a condition, with a deadline
- clock.py     `FakeClock`: time that moves only when the test moves it
- claims.py    poll answers and parsed claims of each lane (watcher, automation)
- servers.py   fake servers on loopback: `Loopback` (a handler per connection) and
               `HostileServer` (scripted raw replies), with their replies and handlers
- devserver.py a device's requests to the dev server (poll, heartbeat, complete, …)
- agent.py     the agent as a user runs it: its environment, config, fake CLIs, journal, status
- lab.py       `Lab`: the dev server, an agent home and fake CLIs, with the agent as a process
- inprocess.py the agent run in this process: its settings, a poll alarm that records waits
- processes.py whether a process (or a process group) is still alive
"""
