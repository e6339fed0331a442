"""XLSForm workbook -> XForm bytes, with pyxform's Python API and ODK Validate.

ODK Validate is the JavaRosa jar that ships inside pyxform; it runs on the machine's Java when
there is one. Errors come back as `Problem`s carrying pyxform's own message (which names the
sheet row), so a form designer sees exactly what to fix.
"""
import shutil
from dataclasses import dataclass

from pyxform.errors import PyXFormError
from pyxform.validators.odk_validate import ODKValidateError
from pyxform.xls2xform import convert

from .. import problems


@dataclass
class Converted:
    xml: bytes
    warnings: list[str]
    validated: bool


def java_available() -> bool:
    return shutil.which("java") is not None


def xlsform_to_xform(workbook: bytes, file_type: str = ".xlsx", validate: bool | None = None) -> Converted:
    """Convert a workbook; `validate=None` runs ODK Validate when Java is present."""
    run_validate = java_available() if validate is None else validate
    warnings: list[str] = []
    try:
        result = convert(xlsform=workbook, file_type=file_type, validate=run_validate,
                         pretty_print=False, warnings=warnings)
    except ODKValidateError as exc:
        raise problems.invalid_xform(reason=_tidy(str(exc))) from None
    except PyXFormError as exc:
        raise problems.invalid_xlsform(reason=_tidy(str(exc))) from None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        # Not a workbook at all (a renamed CSV, a truncated upload): openpyxl's own words.
        raise problems.invalid_xlsform(reason=f"not a readable {file_type} workbook ({exc})") from None
    return Converted(xml=result.xform.encode("utf-8"), warnings=list(result.warnings or warnings),
                     validated=run_validate)


def _tidy(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines)
