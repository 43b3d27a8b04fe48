// libpng 1.6 simplified API (Debian libpng-dev). Imported only by CKAImages.
#include <png.h>
