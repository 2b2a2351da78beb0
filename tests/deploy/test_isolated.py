import os
import subprocess
import sys
from pathlib import Path

from ghostmixnet.deploy.runtimes import installed

TESTS = Path(__file__).resolve().parents[1]


def test_the_native_runtime_tests_pass_in_a_process_of_their_own():
    """Runs tests/deploy/isolated (OpenVINO and ExecuTorch) in a child pytest; their skips (a runtime not
    installed, naming its extra) and failures show in its output."""
    env = {**os.environ, "GHOSTMIXNET_ISOLATED": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-n", "0",
                             str(TESTS / "deploy" / "isolated")], cwd=TESTS.parent, env=env,
                            capture_output=True, text=True, timeout=1800)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
    # The test extra installs both runtimes: none of their tests may skip for want of one (the micro extra's may).
    for runtime in ("openvino", "executorch"):
        if installed(runtime):
            assert f"pip install 'ghostmixnet[{runtime}]'" not in result.stdout, result.stdout[-3000:]
