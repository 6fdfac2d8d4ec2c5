"""The plan card now lives in the presenter (`handlers.presenter.plan_card`); these names stay here
for the modules that import them from the old place."""
from handlers.presenter.plan_card import (SHOWN, button_value, candidates_text, kakao_replies, line, plan_doc,  # noqa: F401
                                          short_text, shown, skippable, slack_blocks, spec_of, verdict_line,
                                          verdicts_text)
from handlers.commands import SKIP_ACTION, STOP_ACTION  # noqa: F401
