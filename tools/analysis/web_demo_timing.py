#!/usr/bin/env python
"""Time the web page's requests: start tools/web_demo.py in-process and POST one photo repeatedly.

    python tools/analysis/web_demo_timing.py [--random-arch EVA02-B-16] [--size 448 600] [--repeats 3]
                                             [--classes "cat; wall; floor; table; person"]
                                             [-- web_demo args, e.g. --checkpoint CKPT]

Prints, per mode (benchmark protocol, quick), the server's inference time and the HTTP round trip
of each request (the first one of a class list includes encoding its prompts), and the peak RSS.
"""
import argparse
import base64
import importlib.util
import io
import json
import os.path as osp
import resource
import threading
import time
import urllib.request

import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--random-arch', default='EVA02-B-16')
    p.add_argument('--size', type=int, nargs=2, default=[448, 600], metavar=('H', 'W'))
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--classes', default='cat; wall; floor; table; person')
    p.add_argument('web_demo_args', nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    spec = importlib.util.spec_from_file_location('declip_web_demo',
                                                  osp.join(ROOT, 'tools', 'web_demo.py'))
    web_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web_demo)
    extra = [a for a in args.web_demo_args if a != '--']
    t0 = time.perf_counter()
    srv, _ = web_demo.make_server(web_demo.parse_args(
        ['--port', '0', '--random-arch', args.random_arch, *extra]))
    print(f'model built in {time.perf_counter() - t0:.1f} s')
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{srv.server_address[1]}/segment'
    try:
        from skimage import data
        photo = Image.fromarray(data.chelsea())
    except ImportError:
        photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8))
    buf = io.BytesIO()
    photo.resize((args.size[1], args.size[0]), Image.BICUBIC).save(buf, format='PNG')
    image = 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()
    for mode in ('benchmark', 'quick'):
        for rep in range(args.repeats):
            body = json.dumps(dict(image=image, classes=args.classes, mode=mode)).encode()
            t = time.perf_counter()
            req = urllib.request.Request(url, data=body, headers={'Content-Type': 'application/json'})
            res = json.loads(urllib.request.urlopen(req, timeout=3600).read())
            print(f"{mode} #{rep + 1}: server {res['seconds']:.2f} s, round trip "
                  f"{time.perf_counter() - t:.2f} s ({res['width']}x{res['height']})")
    print(f'peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB')
    srv.shutdown()


if __name__ == '__main__':
    main()
