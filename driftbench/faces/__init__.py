"""Face backends: detect, align, embed; expression, pose and age signals."""
