"""Put on PYTHONPATH of a `restore-bot serve` under test, with TEST_SCHEDULE_HOUR_SECONDS=N: the
schedule's hours ([keep] backup_every_hours, drill_every_hours) run as N seconds each, so that a test
sees a scheduled drill due every few seconds. Everything else (the store's APScheduler job table, the
scheduler's lease, the instances) is as in production."""
import os

_HOUR = os.environ.get("TEST_SCHEDULE_HOUR_SECONDS")
if _HOUR:
    from handlers.store_leader import SharedScheduler

    _configure = SharedScheduler.configure

    def _in_seconds(trigger_args: dict) -> dict:
        args = dict(trigger_args)
        if "hours" in args:
            args["seconds"] = args.pop("hours") * float(_HOUR)
        return args

    def configure(self, wanted):
        return _configure(self, {job_id: (func, trigger, _in_seconds(trigger_args), args)
                                 for job_id, (func, trigger, trigger_args, args) in wanted.items()})

    SharedScheduler.configure = configure
