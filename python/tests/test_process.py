"""Ctrl-C and the GIL, in real processes and threads."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import recur

SCRIPT = textwrap.dedent(
    """
    import sys, recur
    text = "the quick brown fox jumps over the lazy dog. " * 400
    def cb(e):
        if e["event"] == "step" and e["step"] == 2:
            print("training", flush=True)
    try:
        recur.LanguageModel(hidden=64, layers=1, steps=100000, batch=8, seq_len=32).fit(text, callback=cb)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    # Python's own Ctrl-C handling is intact, and recur trains again.
    recur.LanguageModel(hidden=8, layers=1, steps=3, batch=4, seq_len=8).fit(text)
    print("ok", flush=True)
    """
)


def test_ctrl_c_stops_training_and_raises_keyboard_interrupt():
    p = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in p.stdout:
            lines.append(line.strip())
            if line.strip() == "training":
                time.sleep(0.2)
                p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    finally:
        p.kill()
    assert "interrupted" in lines and lines[-1] == "ok", lines
    assert p.returncode == 0


def test_training_releases_the_gil():
    text = "abcdefgh " * 3000
    done = threading.Event()
    ticks = 0

    def work():
        recur.LanguageModel(hidden=64, layers=1, steps=150, batch=16, seq_len=32).fit(text)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    # The main thread kept running Python while the model trained.
    assert ticks > 20
