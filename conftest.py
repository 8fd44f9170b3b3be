"""Settings for the whole test run, notebooks included (their kernels inherit this environment).

- ``AIGC_PROFILE=smoke``: notebooks run their smallest configuration.
- ``AIGC_CHECKS_STRICT=1``: a failed exercise check raises, so a broken solution fails its test.
- ``AIGC_OFFLINE=1``: nothing is downloaded; the download tests use a local HTTP server and
  switch this off themselves.
"""

import os

os.environ["AIGC_PROFILE"] = "smoke"
os.environ["AIGC_CHECKS_STRICT"] = "1"
os.environ["AIGC_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
