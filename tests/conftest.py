import sys
from pathlib import Path

# tests import each other's dense references (e.g. `from test_curvature import dense_H`)
sys.path.insert(0, str(Path(__file__).parent))
