import sys
from pathlib import Path

# The notebooks' reference solutions (notebooks/solutions/) are imported as `notebooks.solutions.*`.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
