"""Skip the notebooks that need the T0 data when no data folder is found."""

import pytest

from tensorpoly_tn.data import DataNotFoundError, resolve_data_dir

# Notebooks whose stored outputs come from the real T-Few few-shot files and promptsource templates.
NEEDS_T0_DATA = ("05_t0_end_to_end.ipynb",)


def pytest_collection_modifyitems(config, items):
    try:
        resolve_data_dir()
        return
    except DataNotFoundError as error:
        reason = f"T0 data folder not found, so the stored outputs cannot be reproduced: {error}"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.path.name in NEEDS_T0_DATA:
            item.add_marker(skip)
