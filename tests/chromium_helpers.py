"""Headless Chromium for the page tests (selenium): skips with the reason when Chromium, its driver
or selenium is missing. Non-loopback traffic goes to a dead proxy (loopback bypasses proxies), so a
page under test cannot reach the network; ``performance_log`` records every request the page makes
(read it with :func:`requested_urls`)."""
import json
import shutil

import pytest


def chromium_driver(tmp_path, performance_log: bool = False, height: int = 900):
    exe, driver = shutil.which('chromium'), shutil.which('chromedriver')
    if not exe or not driver:
        pytest.skip('Chromium is not installed (.ci/run installs Debian\'s chromium and '
                    'chromium-driver; or: apt-get install -y chromium chromium-driver)')
    webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed '
                                    '(requirements/tests.txt)')
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for a in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--disable-dev-shm-usage', '--proxy-server=http://127.0.0.1:9',
              f'--user-data-dir={tmp_path / "chromium-profile"}', f'--window-size=1280,{height}'):
        opts.add_argument(a)
    if performance_log:
        opts.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def requested_urls(drv):
    """Every URL the page requested so far (performance log of a ``performance_log`` driver)."""
    urls = []
    for entry in drv.get_log('performance'):
        msg = json.loads(entry['message'])['message']
        if msg['method'] == 'Network.requestWillBeSent':
            urls.append(msg['params']['request']['url'])
    return urls
