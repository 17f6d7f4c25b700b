"""Running a coroutine from a test, whatever already runs in the test's thread."""

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run_async(coroutine):
    """Run a coroutine to completion on its own event loop in a fresh thread.

    `asyncio.run` refuses to start while another loop runs in this thread, and the
    session's Playwright browser (sync API) keeps one running here once a browser test ran.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
