// AnnData / 10x readers, preprocessing, writer (issue 4).
