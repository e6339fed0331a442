"""Forms: converting and validating XLSForm workbooks, publishing versions, their media and hashes.

Owns the `forms`, `form_versions` and `form_media` tables. May use models, storage, problems
and the audit log; knows nothing of HTTP. The OpenRosa room serves what this room stores.
"""
from .publish import PublishResult, publish_path, publish_workbook, set_state

__all__ = ["PublishResult", "publish_path", "publish_workbook", "set_state"]
