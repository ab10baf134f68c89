// cairo (Debian libcairo2-dev 1.16): 2-D drawing with text, antialiasing and PNG, SVG and PDF
// surfaces. Imported only by Plot.
#include <cairo.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
