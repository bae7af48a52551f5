#!/usr/bin/env python
"""Regenerate the README's quick-start pictures from the miniature world's towers.

    python tools/analysis/readme_pictures.py --quickstart-out work_dirs/quickstart

* ``docs/images/quickstart_world_overlay.png``: the first ``--rows`` rows of the quick-start's
  ``overlays/before_after.png`` (ground truth | before | after), with its legend;
* ``docs/images/web_demo_world.png``: a screenshot of ``tools/web_demo.py`` without weights (the
  world towers), world sample scene ``--scene`` segmented with the world's class names, taken in
  headless Chromium through selenium (``/usr/bin/chromium`` and ``chromedriver``).
"""
import argparse
import os.path as osp
import shutil
import sys
import tempfile
import threading

from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def crop_overlay(src: str, dst: str, rows: int, scale: int = 3, n_rows: int = 4) -> str:
    """Keep the title, the first ``rows`` image rows and the legend of ``side_by_side``'s PNG."""
    img = Image.open(src).convert('RGB')
    ph, gap, head = 64 * scale, 4, 28
    legend_top = head + n_rows * (ph + gap)
    keep = head + rows * (ph + gap)
    out = Image.new('RGB', (img.width, keep + img.height - legend_top), (255, 255, 255))
    out.paste(img.crop((0, 0, img.width, keep)), (0, 0))
    out.paste(img.crop((0, legend_top, img.width, img.height)), (0, keep))
    out.save(dst, optimize=True)
    return dst


def screenshot(dst: str, scene: int, width: int = 1280, height: int = 900) -> str:
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import web_demo
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    srv, app = web_demo.make_server(web_demo.parse_args(['--port', '0']))
    if not app.banner:
        raise SystemExit('the web page found no world towers (shipped or cached): run the '
                         'quick-start first')
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp()
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which('chromium')
    for a in ('--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--disable-dev-shm-usage', f'--user-data-dir={profile}',
              f'--window-size={width},{height}'):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(executable_path=shutil.which('chromedriver')),
                           options=opts)
    try:
        drv.get(f'http://127.0.0.1:{srv.server_address[1]}')
        wait = WebDriverWait(drv, 300)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#samples button'))
        drv.find_elements(By.CSS_SELECTOR, '#samples button')[scene].click()
        wait.until(lambda d: d.execute_script(
            "return document.getElementById('preview').naturalWidth") > 0)
        drv.find_element(By.ID, 'submit').click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#legend tr.legend-row'))
        wait.until(lambda d: d.execute_script(
            "return document.getElementById('prob').naturalWidth") > 0)
        drv.save_screenshot(dst)
    finally:
        drv.quit()
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    img = Image.open(dst).convert('RGB')
    img.quantize(colors=128).save(dst, optimize=True)
    return dst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quickstart-out', default='work_dirs/quickstart')
    p.add_argument('--rows', type=int, default=2)
    p.add_argument('--scene', type=int, default=1, help='world sample scene of the screenshot')
    p.add_argument('--out-dir', default=osp.join(ROOT, 'docs', 'images'))
    args = p.parse_args(argv)
    src = osp.join(args.quickstart_out, 'overlays', 'before_after.png')
    print(crop_overlay(src, osp.join(args.out_dir, 'quickstart_world_overlay.png'), args.rows))
    print(screenshot(osp.join(args.out_dir, 'web_demo_world.png'), args.scene))


if __name__ == '__main__':
    main()
