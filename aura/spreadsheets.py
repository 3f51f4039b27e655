"""CSV cells a spreadsheet opens as text: a cell that starts like a formula (=, +, -, @, a tab or a
carriage return) would run as one, and model names, key names and browsers' user agents are typed by
people, not always the account's owner (a failed login records whatever its User-Agent said)."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value):
    """``value``, with a leading apostrophe when it is a string a spreadsheet would take for a formula."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value
