"""The web app's languages: which one a request is in, its translated texts, dates and numbers.

Texts are gettext catalogues (`translations/<lang>/*.po`, one file per area of the app so that
each can be translated and reviewed on its own), read with Babel when the app starts; English
is the source language and needs no catalogue. A signed-in user's language is kept on their
account; before sign-in it comes from a cookie or the browser's Accept-Language.
"""
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, dates, numbers
from babel.messages.pofile import read_po
from flask import current_app, g, request

LANGUAGES = {"en": "English", "ru": "Русский"}
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "fieldsync_language"
TRANSLATIONS = Path(__file__).parent / "translations"


def load_catalogues(folder: Path = TRANSLATIONS) -> dict[str, dict]:
    """{language: {msgid: msgstr or (singular, plural…)}} from every .po file; untranslated and
    fuzzy entries are left out, so they show in English rather than wrong."""
    catalogues: dict[str, dict] = {}
    for po in sorted(folder.glob("*/*.po")):
        with po.open("rb") as fh:
            catalogue = read_po(fh, locale=po.parent.name)
        texts = catalogues.setdefault(po.parent.name, {})
        for message in catalogue:
            if not message.id or message.fuzzy or not message.string:
                continue
            key = message.id[0] if isinstance(message.id, tuple) else message.id
            if isinstance(message.string, tuple):
                if all(message.string):
                    texts[key] = message.string
            else:
                texts[key] = message.string
    return catalogues


def N_(message: str) -> str:
    """Mark a text for translation where it is defined; it is translated where it is shown."""
    return message


def choose_language(user_language: str | None) -> str:
    if user_language in LANGUAGES:
        return user_language
    cookie = request.cookies.get(LANGUAGE_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return request.accept_languages.best_match(list(LANGUAGES), DEFAULT_LANGUAGE)


def language() -> str:
    return getattr(g, "language", None) or DEFAULT_LANGUAGE


def _catalogue() -> dict:
    return current_app.extensions["fieldsync.catalogues"].get(language(), {})


def gettext(message: str, **params) -> str:
    text = _catalogue().get(message, message)
    if isinstance(text, tuple):
        text = text[0]
    return text % params if params else text


def ngettext(singular: str, plural: str, n: int, **params) -> str:
    params.setdefault("num", n)
    forms = _catalogue().get(singular)
    if isinstance(forms, tuple):
        text = forms[_plural_index(Locale.parse(language()).plural_form, n, len(forms))]
    else:
        text = singular if n == 1 else plural
    return text % params


def _plural_index(rule, n: int, count: int) -> int:
    # Russian has one, few, many (and other for fractions): in the order gettext lists them.
    order = {"one": 0, "few": 1, "many": 2, "other": count - 1}
    return min(order.get(rule(n), count - 1), count - 1)


def timezone() -> ZoneInfo:
    return ZoneInfo(current_app.config["FIELDSYNC"]["TIMEZONE"])


def format_datetime(value, style: str = "medium") -> str:
    if value is None:
        return "—"
    return dates.format_datetime(value, style, tzinfo=timezone(), locale=language())


def format_date(value, style: str = "medium") -> str:
    if value is None:
        return "—"
    return dates.format_date(value, style, locale=language())


def format_number(value, decimals: int | None = None) -> str:
    if value is None:
        return "—"
    if decimals is not None:
        return numbers.format_decimal(value, format=f"#,##0.{'0' * decimals}" if decimals else "#,##0",
                                      locale=language())
    return numbers.format_decimal(value, locale=language())


def format_percent(value) -> str:
    if value is None:
        return "—"
    return numbers.format_percent(value, format="#,##0%", locale=language())


def time_ago(value) -> str:
    """'5 minutes ago' in the request's language; '—' for never."""
    if value is None:
        return gettext("never")
    from ..models import utcnow
    return dates.format_timedelta(value - utcnow(), add_direction=True, locale=language())


def init_app(app) -> None:
    app.extensions["fieldsync.catalogues"] = load_catalogues()
    app.jinja_env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext, language=language,
                                 LANGUAGES=LANGUAGES)
    app.jinja_env.filters.update(datetime=format_datetime, date=format_date, number=format_number,
                                 percent=format_percent, ago=time_ago)
