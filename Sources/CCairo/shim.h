// cairo from Debian (libcairo2-dev): PNG and SVG surfaces, text through the toy font API.
// Imported only by CKAPlot.
#include <cairo.h>
#include <cairo-svg.h>
