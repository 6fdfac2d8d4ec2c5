"""The plan card lives in the presenter now (`handlers.presenter.plan_card`); bot/worker.py still
imports `verdict_line` from here, so that name stays until it imports it from there."""
from handlers.presenter.plan_card import verdict_line

__all__ = ["verdict_line"]
