"""What a Midjourney submit is, for routing and billing: pure functions over the request.

Every submit is billed as one action, a key of the price table's `per_action`:
`mj_imagine`, `mj_blend`, `mj_describe`, `mj_shorten`, `mj_modal` by endpoint; `change` and
`simple-change` by their UPSCALE / VARIATION / REROLL; `action` by its button's customId:

    MJ::JOB::upsample::1::<hash>            mj_upscale   (upsample_v6_2x_subtle... too)
    MJ::JOB::variation::2::<hash>           mj_variation (low_variation, high_variation too)
    MJ::JOB::reroll::0::<hash>::SOLO        mj_reroll
    MJ::JOB::pan_left::1::<hash>::SOLO      mj_pan
    MJ::Outpaint::50::1::<hash>::SOLO       mj_zoom
    MJ::CustomZoom::<hash>                  mj_custom_zoom (opens a modal; free unless priced)
    MJ::Inpaint::1::<hash>::SOLO            mj_inpaint     (opens a modal; free unless priced)
    MJ::Job::PicReader::1                   mj_imagine   (imagine a described prompt)
    anything else                           mj_<name>    (billed only if the table lists it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from ..config.snapshot import PriceRuntime

# Opening a modal costs nothing by default: the `modal` submit that completes it is billed.
MODAL_OPENERS = frozenset({"mj_custom_zoom", "mj_inpaint"})
FOLLOW_UPS = frozenset({"action", "change", "simple-change", "modal"})
_BY_ENDPOINT = {
    "imagine": "mj_imagine",
    "blend": "mj_blend",
    "describe": "mj_describe",
    "shorten": "mj_shorten",
    "modal": "mj_modal",
}
_CHANGES = {"UPSCALE": "mj_upscale", "VARIATION": "mj_variation", "REROLL": "mj_reroll"}
_SIMPLE = re.compile(r"^\s*(\S+)\s+(?:([UuVv])([1-4])|[Rr])\s*$")
_KEYWORDS = (
    ("upsample", "mj_upscale"),
    ("variation", "mj_variation"),
    ("reroll", "mj_reroll"),
    ("pan", "mj_pan"),
    ("outpaint", "mj_zoom"),
    ("customzoom", "mj_custom_zoom"),
    ("inpaint", "mj_inpaint"),
    ("picreader", "mj_imagine"),
    ("promptanalyzer", "mj_imagine"),
)


class BadAction(ValueError):
    """The request names an action the gateway cannot read."""


@dataclass(frozen=True, slots=True)
class SimpleChange:
    task_id: str
    action: str  # UPSCALE | VARIATION | REROLL
    rest: str  # the content after the task id, e.g. "U1"


def endpoint_action(endpoint: str) -> str:
    return _BY_ENDPOINT[endpoint]


def change_action(action: str) -> str:
    found = _CHANGES.get(action.upper())
    if found is None:
        raise BadAction(f"action must be one of UPSCALE, VARIATION, REROLL (got {action!r})")
    return found


def custom_id_action(custom_id: str) -> str:
    parts = custom_id.strip().split("::")
    if len(parts) < 3 or parts[0] != "MJ" or len(custom_id) > 512:
        raise BadAction(f"customId {custom_id[:80]!r} is not a Midjourney button id (MJ::...)")
    name = parts[2] if parts[1].upper() == "JOB" else parts[1]
    lowered = name.lower()
    if not lowered:
        raise BadAction(f"customId {custom_id[:80]!r} names no action")
    for keyword, action in _KEYWORDS:
        if keyword in lowered:
            return action
    return "mj_" + re.sub(r"[^a-z0-9]+", "_", lowered).strip("_")


def parse_simple_change(content: str) -> SimpleChange:
    match = _SIMPLE.match(content)
    if match is None:
        raise BadAction('content must be "<taskId> U1..U4", "<taskId> V1..V4" or "<taskId> R"')
    task_id, letter, index = match.group(1), match.group(2), match.group(3)
    if letter is None:
        return SimpleChange(task_id, "REROLL", "R")
    action = "UPSCALE" if letter.upper() == "U" else "VARIATION"
    return SimpleChange(task_id, action, f"{letter.upper()}{index}")


def task_action_name(action: str) -> str:
    """The proxy's action name for a billing action: mj_upscale -> UPSCALE."""
    return action.removeprefix("mj_").upper()


def action_cost(price: PriceRuntime | None, action: str, multiplier: float) -> Decimal | None:
    """USD for one action, times the key's and group's multipliers; None when unpriced."""
    rate = price.rates.per_action.get(action) if price is not None else None
    if rate is None:
        return Decimal(0) if action in MODAL_OPENERS else None
    return Decimal(str(rate)) * Decimal(str(multiplier))
