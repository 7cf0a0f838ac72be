# The client and plugin under test come from this source tree (an installed
# copy's entry point has the plugin's module name, so it is not loaded twice).
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

pytest_plugins = ["faultfs.pytest_plugin"]
