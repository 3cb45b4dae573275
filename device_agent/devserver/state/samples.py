"""The sample watchers (or automations) `dev-server` seeds, and the device they run on.

They are seeded before any device exists, pinned to a default worker_id. A user who then
signs in as a real device would (`device-agent login`) gets a worker_id of its own, and
would find nothing to run. So, unless the samples were pinned on purpose (`--worker-id`),
the first device that signs in takes them over, queued runs included; every other device
that signs in is told, once, how to pin one to itself (`POST /_dev/<kind>/<id>/pin`).
What is said goes to `on_notice` (the server's console) and `samples.notices`.
"""

from __future__ import annotations

from typing import Literal

from device_agent.devserver.state.devices import Devices

SampleKind = Literal["watchers", "automations"]


class Samples(Devices):
    """Who the samples are pinned to, and moving a watcher or automation to another device."""

    def mark_samples(
        self, kind: SampleKind, ids: list[str], worker_id: str, *, follow_first_device: bool
    ) -> None:
        """Remember what was seeded, pinned to `worker_id`; `follow_first_device`: the pin
        was a default, which the first device that signs in takes over."""
        with self.lock:
            samples = self.samples
            samples.kind = kind
            samples.ids = [int(ident) for ident in ids]
            samples.worker_id = worker_id
            samples.follow_first_device = follow_first_device

    def device_signed_in(self, worker_id: str) -> None:
        """A device minted its token: give it the samples, or say how to (caller holds the lock)."""
        samples = self.samples
        if not samples.ids or samples.worker_id is None or worker_id in samples.told:
            return
        samples.told.add(worker_id)
        if worker_id == samples.worker_id:
            samples.follow_first_device = False  # the device they were pinned to: nothing to do
            return
        if samples.follow_first_device:
            old = samples.worker_id
            for ident in samples.ids:
                self.pin(samples.kind, ident, worker_id)
            samples.worker_id = worker_id
            samples.follow_first_device = False
            self._notice(
                f"The sample {samples.kind} {self._names()} are now pinned to {worker_id}, the "
                f"first device that signed in (they were pinned to {old}), with their queued runs."
            )
            return
        example = samples.ids[-1]
        self._notice(
            f"Device {worker_id} signed in; the sample {samples.kind} {self._names()} stay "
            f"pinned to {samples.worker_id}. To pin one to this device: curl -X POST "
            f"{self.public_url}/_dev/{samples.kind}/{example}/pin "
            f'-d \'{{"worker_id": "{worker_id}"}}\''
        )

    def pin(self, kind: SampleKind, item_id: str | int, worker_id: str) -> None:
        """Pin a watcher or automation to `worker_id`'s device, with its runs still pending."""
        with self.lock:
            table = self._watchers if kind == "watchers" else self._automations
            record = table.get(int(item_id))
            if record is None:
                raise KeyError(f"no {kind[:-1]} {item_id!r}")
            device = self.ensure_device(worker_id)
            record.device_id = device.id
            for run in self._runs.values():
                owner = run.watcher_id if kind == "watchers" else run.automation_id
                if owner == record.id and run.status == "pending":
                    run.device_id = device.id
                    run.approved_input["device_worker_id"] = device.id

    def _names(self) -> str:
        table = self._watchers if self.samples.kind == "watchers" else self._automations
        names = [f"{table[i].name!r} (#{i})" for i in self.samples.ids if i in table]
        return ", ".join(names)

    def _notice(self, message: str) -> None:
        self.samples.notices.append(message)
        self.on_notice(message)
