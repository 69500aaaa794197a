"""Write a few well-known photos (scikit-image, matplotlib samples; public domain / BSD) into a folder."""
import shutil
import sys
from pathlib import Path

import matplotlib.cbook as cbook
import skimage.data
from PIL import Image

out = Path(sys.argv[1] if len(sys.argv) > 1 else "photos")
out.mkdir(parents=True, exist_ok=True)
Image.fromarray(skimage.data.coffee()).save(out / "coffee.jpg", quality=95)
Image.fromarray(skimage.data.chelsea()).save(out / "chelsea.jpg", quality=95)
Image.fromarray(skimage.data.astronaut()).save(out / "astronaut.jpg", quality=95)
shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), out / "grace_hopper.jpg")
print(f"wrote 4 photos to {out}")
