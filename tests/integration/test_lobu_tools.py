"""A CLI that is wired to the Lobu tools may call them (issue 21, point 14).

`claude -p` has nobody to ask for permission: a call to an MCP tool that
`--allowedTools` does not allow is denied. The fake Claude models that rule, so
wiring the tools into a watcher run without allowing them shows up as a denial.
"""

from __future__ import annotations

from .conftest import Lab


def test_a_watcher_run_with_claude_code_may_call_the_lobu_tools(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Read my notes [[lobu_tool]]"))
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    run = lab.state.run(run_id)
    assert run.status == "completed"
    assert run.output == 'Lobu answered: {"items": []}'  # the dev server's knowledge.read
    (execution,) = lab.executions()
    argv = execution["argv"]
    assert argv[argv.index("--allowedTools") + 1] == "mcp__lobu__query_sdk,mcp__lobu__run_sdk"


def test_a_watcher_run_without_the_lobu_tools_is_given_no_tool_allowance(lab: Lab) -> None:
    lab.config["executor"] = {"mcp": False}
    run_id = lab.state.queue_run(lab.add_watcher("Read my notes [[lobu_tool]]"))
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    assert lab.state.run(run_id).output == "No Lobu tools were wired in."
    (execution,) = lab.executions()
    assert "--allowedTools" not in execution["argv"]
    assert "--mcp-config" not in execution["argv"]
