"""Everything a user reads, in one place: short, true, and each error says what to do next."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from bot.core.types import Button
from jobs.contract.kinds import JobKind
from pipeline.errors import HeadshotError, Param, Reason
from pipeline.looks import LOOK_KEYS, choices_of
from pipeline.styles import STYLES

__all__ = [
    "CANCEL_BUTTON",
    "START_BUTTON",
    "clip",
    "explain",
    "favorite_button",
    "headshot_buttons",
    "HELP",
    "format_eta",
    "selfie_checking",
    "selfie_count_line",
    "styles_text",
    "undeliverable",
    "withheld",
]

HELP = """I turn 10-20 selfies into professional headshots.

/train - start: then send your selfies (photos of just you, face clearly visible, different angles and light)
/train woman 30s glasses - how the pictures describe you: woman, man or person; an age (20s to 70s); glasses
/train start - train your personal model once enough selfies are in
/headshot - pick a style, backdrop, outfit and shape with buttons
/headshot <style> - render headshots, e.g. /headshot linkedin, or in your own words:
    /headshot navy suit on a rooftop at dusk
    add a backdrop, outfit or shape: /headshot linkedin backdrop:studio outfit:suit aspect:square
    (or just /headshot linkedin studio suit square; end with ? to pick the rest with buttons)
/styles - the styles, backdrops, outfits and shapes you can pick
/status - where your session and jobs are
/cancel - stop the running training or rendering
/favorites - the headshots you starred, as original files (/favorites zip: in one ZIP)
/export - your trained model (LoRA) as files, to use in diffusers or AUTOMATIC1111/ComfyUI
/more <number> - variations of one headshot
/remix <number> <words> - one headshot in a new scene, e.g. /remix 3 on a beach at sunset
/upscale <number> - one headshot at twice the size, its face redone in detail
/delete - erase your selfies, model and headshots
/help - this message

Tap ★ under a headshot (or react to it, or send /favorite <number>) to keep it as a favorite; the other buttons
under it make variations, remix it or upscale it.
Your photos stay private to this chat."""

START_BUTTON = Button("Start training", "/train start")
CANCEL_BUTTON = Button("Cancel", "/cancel")

PRIVATE_ONLY = "Please send me your selfies in a private chat: I never keep photos posted in groups."
UNKNOWN_COMMAND = "I don't know the command '{command}'. Send /help for the list."
TRAIN_INTRO = (
    "Let's train your model. Send {needed} to {maximum} selfies: just you, face clearly visible, "
    "different angles, expressions and light; no sunglasses, no group photos."
)
TRAIN_ALREADY_COLLECTING = "I'm collecting your selfies: {count}. {next_step}"
TRAIN_NO_SELFIES = "You haven't sent any selfies yet. Send {needed} to {maximum} photos of yourself, then /train start."
TRAIN_NOT_ENOUGH = "I have {count} of the {needed} selfies I need. Send {missing} more, then /train start."
TRAIN_QUEUED = "Training queued (position {position}). I'll post progress here; this takes a few minutes."
TRAIN_QUEUED_RUNNING = "Training queued. I'll post progress here; this takes a few minutes."
TRAIN_ALREADY_RUNNING = "Your model is already training. Send /status to see progress or /cancel to stop."
TRAIN_ALREADY_DONE = (
    "Your model is trained. Send /headshot <style> to render, or /train new to start over with new selfies."
)
SELFIE_WHILE_TRAINING = (
    "Your model is training on the selfies you sent; this photo wasn't added. Send /cancel to change them."
)
SELFIE_WHEN_READY = "Your model is already trained. To train again with new selfies, send /train new first."
SELFIE_LIMIT = "You already sent {maximum} selfies, the most I use. Send /train start to train."
SELFIE_ACCEPTED = "✓ {filename}: accepted"
SELFIE_REJECTED = "✗ {filename}: {reason}"
HEADSHOT_NEEDS_MODEL = "I need to train your model first: send /train and then your selfies."
HEADSHOT_WHILE_TRAINING = "Your model is still training. I'll tell you when it's ready for /headshot."
HEADSHOT_NEEDS_STYLE = "Which style? Send /headshot <style>, for example /headshot linkedin. /styles lists them all."
# /headshot's steps after the style (bot/core/look_choice.py); {style} is the style's title with the choices so far.
LOOK_ASK = {
    "backdrop": "{style}: which backdrop?",
    "outfit": "{style}: what to wear?",
    "aspect": "{style}: which shape? Square for avatars, 4:5 for profile pages, 2:3 for portraits.",
}
LOOK_DEFAULT = "{title} (default)"
LOOK_AS_DESCRIBED = "As you described"
LOOK_UNKNOWN_OPTION = (
    "I don't know the option '{option}:'. /headshot takes backdrop:, outfit: and aspect:, "
    "e.g. /headshot linkedin backdrop:studio outfit:suit aspect:square"
)
LOOK_UNKNOWN_VALUE = "There is no {key} called '{value}'. Pick one of: {choices}; or {key}:? to choose with buttons."
HEADSHOT_BUSY = "I'm still rendering your {style} headshots. Wait for them, or send /cancel."
HEADSHOT_QUEUED = "Rendering {count} {style} headshots (queue position {position})…"
HEADSHOT_QUEUED_RUNNING = "Rendering {count} {style} headshots…"
CANCEL_NOTHING = "Nothing is running, so there is nothing to cancel."
CANCELLED_TRAINING = "Training cancelled. Your selfies are kept: send more, or /train start to try again."
CANCELLED_RENDERING = "Rendering cancelled. Send /headshot <style> whenever you like."
DELETE_CONFIRM = "This erases your selfies, your trained model and all your headshots, for good. Are you sure?"
DELETE_BUTTONS = (Button("Yes, erase everything", "/delete confirm"), Button("Keep my data", "/status"))
DELETE_DONE = "Done: your selfies, model, headshots and favorites are erased. Send /train to start again."
DELETE_NOTHING_PENDING = "There is nothing to confirm. Send /delete first."
FAVORITE_ADDED = "★ Saved headshot #{number} to your favorites ({total} in all). /favorites sends the originals."
FAVORITE_ALREADY = "That headshot is already one of your favorites."
FAVORITES_EMPTY = "No favorites yet: tap ★ under a headshot you like (or react to it) to keep it."
FAVORITE_NO_SUCH = "There is no headshot #{number}: you have {count}. Send /favorite with a number from their captions."
FAVORITE_NO_HEADSHOTS = "You have no headshots yet: send /headshot <style> to render some, then keep your favorites."
FAVORITES_SENT = "Your favorite headshots ({count}), as original files:"
# Actions on one headshot (/more, /remix, /upscale; the buttons under each headshot send them).
ACTION_NO_SUCH = "There is no headshot #{number}: you have {count}. Send /{action} with a number from their captions."
ACTION_NO_HEADSHOTS = "You have no headshots yet: send /headshot <style> to render some first."
ACTION_BUSY = "I'm still rendering your last request. Wait for it, or send /cancel, then try /{action} again."
REMIX_NEEDS_WORDS = (
    "Tell me what to change, after the number: /remix {number} <words>, e.g. /remix {number} on a beach at sunset."
)
REMIX_TITLE = "{title}, remixed"
MORE_QUEUED = "Rendering {count} variations of #{number}{queue}…"
REMIX_QUEUED = "Remixing #{number} into {count} new headshots{queue}…"
UPSCALE_QUEUED = "Upscaling #{number} to twice its size{queue}…"
QUEUE_POSITION = " (queue position {position})"
VARIATIONS_READY = "Here are your variations of #{number}. Tap ★ Keep under the ones you like."
REMIXES_READY = "Here are your remixes of #{number}. Tap ★ Keep under the ones you like."
UPSCALE_READY = "Here is #{number} at twice the size."
TRAINED = "Your model is ready! Send /headshot <style>, e.g. /headshot linkedin. /styles lists them all."
# The same news when the first headshots were queued with it (bot/core/first_headshots.py).
TRAINED_FIRST_HEADSHOTS = (
    "Your model is ready! Your first {style} headshots are on their way. For other looks, send /headshot <style> "
    "(/styles lists them all)."
)
PREVIEW_TITLE = "Preview · {title}"
PREVIEW_QUEUED = (
    "No model yet, so I'm rendering {count} {style} headshots straight from your selfies{queue}… For a closer "
    "likeness, /train start trains your own model."
)
PREVIEW_READY_TRAINING = (
    "A first look while your model trains: rendered straight from your selfies, no training yet. Your trained "
    "headshots follow when training ends."
)
PREVIEW_READY = (
    "Here they are, rendered straight from your selfies. /train start trains your own model for a closer likeness."
)
PREVIEW_FAILED_TRAINING = "The first look from your selfies did not work out this time; your training goes on."
IMAGES_READY = "Here are your {style} headshots. Tap ★ Keep under the ones you like (or react to them)."
IMAGE_CAPTION = "#{number} · {style} · seed {seed}"
# Renders the image safety check flagged (jobs/worker/render_job.py) are never stored; the user hears it once per
# request, in the request's last word.
WITHHELD_SOME = "Our image safety check flagged {count} of the renders, so I left them out."
WITHHELD_ALL = (
    "Our image safety check flagged all {count} of your {style} headshots, so I withheld them. "
    "Try another style, or other words."
)
PROGRESS_TRAINING = "Training your model: {percent}% (step {step}/{total}){eta}"
PROGRESS_RENDERING = "Rendering: {done}/{total} headshots done"
TRAINING_FINISHED = "Training finished: 100%."
STARTED_TRAINING = "Training your model: starting…"
STARTED_RENDERING = "Rendering your headshots: starting…"
SLOW_DOWN = (
    "Slow down, please: that was more messages than I take at once, so I'm skipping new ones for a few seconds. "
    "Everything you sent before is kept; send the skipped ones again in a moment."
)
RETENTION_EXPIRED = (
    "As promised, I erased your trained model and headshots older than {days} days. Send /train to make a new one."
)
INTERNAL_ERROR = "Something went wrong on our side and I couldn't do that. Nothing you sent was lost; please try again."


def clip(value: str, limit: int = 40) -> str:
    """A user's words, safe to echo: control and bidi characters shown as '�', at most ``limit`` characters."""
    printable = "".join("\ufffd" if unicodedata.category(char).startswith("C") else char for char in value)
    return printable if len(printable) <= limit else printable[: limit - 1] + "…"


def favorite_button(number: int) -> Button:
    return Button(f"★ Keep #{number}", f"/favorite {number}")


def headshot_buttons(number: int, *, actions: bool = True) -> tuple[Button, ...]:
    """Under headshot #number: keep it, vary it, remix it (the command answers how to add the words), upscale it;
    a preview from the selfies (``actions`` False) is only kept: the actions need a model.

    Each is the plain command, so a button posted before a restart still works after it."""
    if not actions:
        return (favorite_button(number),)
    return (
        favorite_button(number),
        Button(f"↻ More #{number}", f"/more {number}"),
        Button(f"✎ Remix #{number}", f"/remix {number}"),
        Button(f"⤢ Upscale #{number}", f"/upscale {number}"),
    )


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds <= 0:
        return ""
    if seconds < 90:
        return f", about {round(seconds)} s left"
    return f", about {round(seconds / 60)} min left"


def progress(kind: JobKind, done: int, total: int, eta_s: float | None) -> str:
    if kind == JobKind.TRAIN:
        percent = round(100 * done / max(1, total))
        return PROGRESS_TRAINING.format(percent=percent, step=done, total=total, eta=format_eta(eta_s))
    return PROGRESS_RENDERING.format(done=done, total=total)


def selfie_checking(count: int) -> str:
    return f"Checking {count} photo{'' if count == 1 else 's'}…"


def selfie_count_line(count: int, needed: int, maximum: int) -> str:
    if count >= needed:
        return (
            f"{count} selfies accepted ({needed} needed, up to {maximum}). "
            "Ready: press Start training or send /train start."
        )
    return f"{count} of {needed} selfies accepted. Send {needed - count} more."


def status_text(state: str, selfies: str | None, job: tuple[JobKind, int | None] | None, headshots: int) -> str:
    """``/status``: the session's state, its selfie count while collecting, the open job, the headshots so far."""
    lines = [f"Session: {state}."]
    if selfies is not None:
        lines.append(selfies)
    if job is not None:
        kind, position = job
        where = f"queue position {position}" if position else "running"
        lines.append(f"{'Training' if kind == JobKind.TRAIN else 'Rendering'}: {where}.")
    lines.append(f"Headshots so far: {headshots}.")
    return "\n".join(lines)


def styles_text() -> str:
    lines = [f"/headshot {name} - {style.title}" for name, style in STYLES.items()]
    choices = [f"{key}: " + ", ".join(choices_of(key)) for key in LOOK_KEYS]
    return "Styles:\n" + "\n".join(lines) + "\n\nAdd any of these (each style has its own):\n" + "\n".join(choices)


# Faults: restarts, and the watchdog's word on jobs that have gone quiet (bot/core/watchdog.py).
RESTARTED_TRAINING = (
    "Our worker stopped while training your model, so training restarted (try {try_number}). Nothing you sent was lost."
)
RESTARTED_RENDERING = "Our worker stopped while rendering, so rendering restarted (try {try_number})."
STILL_QUEUED = "Still in the queue for your {what} (position {position}). I'll post here as soon as it starts."
STILL_WAITING = "Your {what} is waiting for a free worker. I'll post here as soon as it starts."
STILL_RUNNING = (
    "Still working on your {what}; no news from the worker for {minutes} min. I'll post here when it's done."
)
# The chat refused a job's result for good (a file too big, an image it rejects) but still takes text.
UNDELIVERABLE = "I couldn't post what your {what} made: this chat refused it. {hint}"


# Why something could not be done, by the reason code the lower layers raise (pipeline/errors.py) or a worker's
# ``failed`` event carries. ``explain`` fills them in; a job's reasons also get what the job was and how to retry.
REASONS: dict[Reason, str] = {
    Reason.EMPTY_FILE: "That file is empty; please send the photo again.",
    Reason.NOT_A_PHOTO: "That file is not a photo I can read (JPEG, PNG, HEIC or WebP please).",
    Reason.TRUNCATED: "That photo is cut off (the file is incomplete); please send it again.",
    Reason.TOO_MANY_PIXELS: "That photo is too large to process{where}; please send one under {megapixels} megapixels.",
    Reason.TOO_LONG_A_SIDE: (
        "That photo is {width}x{height} pixels, too long on one side; please send a normal photo, "
        "under {limit} pixels a side."
    ),
    Reason.TOO_SMALL: (
        "That photo is only {width}x{height} pixels; send one at least {min_side} pixels on its shorter side."
    ),
    Reason.NO_FACE: (
        "No face found: send a photo where your face is clearly visible, looking at the camera, without sunglasses."
    ),
    Reason.SEVERAL_FACES: "{found} found: send a photo of just you.",
    Reason.FACE_TOO_SMALL: (
        "Face too small ({width} px wide; I need at least {needed}): move closer, or crop the photo around your face."
    ),
    Reason.BLURRY: (
        "Blurry (sharpness {sharpness:.0f}; I need at least {needed:.0f}): hold the phone still and find more light."
    ),
    Reason.DUPLICATE: "Same photo as one you already sent: send a different shot (another angle, expression or light).",
    Reason.OTHER_PERSON: (
        "Looks like a different person from your other selfies (likeness {score:.2f}, I need {needed:.2f}): "
        "send only photos of yourself."
    ),
    Reason.UNKNOWN_STYLE: (
        "There is no style called '{name}'. Pick one of: {choices}; or describe the look in a few words."
    ),
    Reason.STYLE_EMPTY: "The style description is empty; describe the look, e.g. 'navy suit, rooftop at dusk'.",
    Reason.STYLE_TOO_LONG: "The style description is {length} characters long; keep it to {limit} or fewer.",
    # The safety screen on a user's own words (pipeline/safety/text.py): nothing was queued. The words are not echoed.
    Reason.UNSAFE_SEXUAL: (
        "I can't render that: headshots stay dressed and non-sexual. Nothing was queued; describe another look, "
        "e.g. 'navy suit, rooftop at dusk'."
    ),
    Reason.UNSAFE_MINOR: (
        "I can't render that: I never make pictures of children or that make anyone look like a child. Nothing was "
        "queued; describe an adult look, e.g. 'navy suit, rooftop at dusk'."
    ),
    Reason.UNSAFE_PUBLIC_FIGURE: (
        "I can't render that: I don't put you in the likeness of, or beside, a real public figure. Nothing was "
        "queued; describe the look without naming anyone."
    ),
    Reason.TRAINING_FAILED: "Training failed on our side. {hint}",
    Reason.RENDERING_FAILED: "Rendering failed on our side. {hint}",
    Reason.ACTION_UNSUPPORTED: (
        "This server's model cannot do /more, /remix or /upscale yet. /headshot <style> renders new headshots."
    ),
    Reason.PREVIEW_UNSUPPORTED: (
        "This server's model cannot render from selfies, so there is no preview: your trained headshots come when "
        "training ends."
    ),
    Reason.OUT_OF_GPU_MEMORY: (
        "Our GPU ran out of memory rendering your headshots, even {batch} at a time. Please send the same /headshot "
        "command again in a few minutes."
    ),
    Reason.TOO_MANY_TRIES: (
        "Our worker crashed during your {what} ({tries} runs, none finished), so I stopped it. {hint}"
    ),
    Reason.TIMED_OUT: "Your {what} took longer than the {limit} it may take, so I stopped it. {hint}",
    Reason.JOB_LOST: "I lost track of your {what} (our job queue restarted without it). {hint}",
}
_JOB_WHAT = {JobKind.TRAIN: "training", JobKind.GENERATE: "rendering"}
_RETRY_HINT = {
    JobKind.TRAIN: "Your selfies are kept: send /train start to try again.",
    JobKind.GENERATE: "Send the same /headshot command to try again.",
}


def explain(
    reason: Reason | HeadshotError, params: Mapping[str, Param] | None = None, kind: JobKind | None = None
) -> str:
    """The sentence a user reads for ``reason`` (or an error's reason and parameters), about a job of ``kind``."""
    if isinstance(reason, HeadshotError):
        error = reason
        if error.reason == Reason.SESSION:
            return str(error)  # rendered from this module by the bot's core before it was raised
        reason, params = error.reason, error.params
    template = REASONS.get(reason)
    if template is None:
        return INTERNAL_ERROR
    values: dict[str, Param] = dict(params or {})
    if reason == Reason.SEVERAL_FACES:
        count = int(values.get("count", 2))
        values["found"] = "Two faces" if count == 2 else f"{count} faces"
    if "limit_s" in values:
        values["limit"] = format_duration(float(values["limit_s"]))
    if kind is not None:
        values.setdefault("what", _JOB_WHAT[kind])
        values.setdefault("hint", _RETRY_HINT[kind])
    try:
        return template.format(**values)
    except (KeyError, ValueError, IndexError):
        return INTERNAL_ERROR  # an event from another version without a parameter this text needs


def withheld(ready: str, dropped: int, posted: int, style: str) -> str:
    """A request's last word (``ready``) with what the image safety check withheld said once."""
    if not dropped:
        return ready
    if not posted:
        return WITHHELD_ALL.format(count=dropped, style=style)
    return f"{ready}\n{WITHHELD_SOME.format(count=dropped)}"


def undeliverable(kind: JobKind) -> str:
    return UNDELIVERABLE.format(what=_JOB_WHAT[kind], hint=_RETRY_HINT[kind])


def format_duration(seconds: float) -> str:
    return f"{round(seconds)} s" if seconds < 90 else f"{round(seconds / 60)} min"


# Who the user is (``/train woman 30s glasses``; pipeline/subject.py).
SUBJECT_BUTTONS = (Button("Woman", "/train woman"), Button("Man", "/train man"), Button("Person", "/train person"))
SUBJECT_ASK = "How should the pictures describe you? Tap one (now or later, before /train start); default: a person."
SUBJECT_SET = (
    "I'll describe you as {described}. Add an age with /train 30s (20s to 70s), or glasses with /train glasses."
)
SUBJECT_UNKNOWN_WORD = (
    "'{word}' doesn't describe you to me. Use woman, man or person; an age from 20s to 70s (or any-age); "
    "glasses or no-glasses. For example: /train woman 30s glasses"
)
SUBJECT_NEEDS_NEW = "Your model was trained as {described}. To change that, train a new one: /train new {words}"
SUBJECT_WHILE_TRAINING = "Your model is training as {described}; send /cancel first to change how you're described."
SUBJECT_STATUS = "Described as: {described}."


def glasses_button(glasses: bool) -> Button:
    return Button("No glasses", "/train no-glasses") if glasses else Button("Glasses", "/train glasses")


# Quotas an operator sets (bot/core/quotas.py).
QUOTA_TRAININGS = (
    "You've reached today's limit of {limit} training(s) per user. Your quota resets at midnight UTC, in {when}; "
    "your selfies are kept until then."
)
QUOTA_IMAGES = (
    "That would pass today's limit of {limit} headshots: {left} left, and a /headshot renders {count}. Your quota "
    "resets at midnight UTC, in {when}."
)
QUOTA_LEFT = "Today: {left} of {limit} {what} left."
QUOTA_RESETS = "Quotas reset at midnight UTC, in {when}."


def format_wait(seconds: float) -> str:
    """A wait of hours as "5 h 12 min", shorter ones in minutes."""
    minutes = max(1, round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


# Take it home: favorites as ZIP files and the model as LoRA files (bot/core/takeaway.py).
FAVORITES_ARGS = "/favorites takes no '{args}': send /favorites for the files, or /favorites zip for one ZIP."
FAVORITES_ZIP_SENT = "Your {count} favorite headshots in {parts}:"
EXPORT_NEEDS_MODEL = "There is no trained model to export yet: send /train and then your selfies."
EXPORT_GONE = "Your model's file is gone (erased after its retention time). Send /train new to train a new one."
EXPORT_SENT = (
    "Your model as two LoRA files:\n"
    'diffusers: pipe.load_lora_weights("{diffusers}") on an SDXL pipeline; prompt with "{phrase}".\n'
    "AUTOMATIC1111/ComfyUI/Forge: put {kohya} in models/Lora and add <lora:{stem}:1> {phrase} to your prompt."
)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


EXPORT_TOO_BIG = "{name} is {size}, more than the {limit} this chat takes, so I can't send it here."
EXPORT_LINK = (
    "{name} is {size}, more than the {limit} this chat takes: download it here within {hours} hour(s), and keep the "
    "link to yourself (anyone with it can download your model): {link}"
)
