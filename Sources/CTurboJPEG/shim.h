// libjpeg-turbo TurboJPEG API (Debian libturbojpeg0-dev). Imported only by CKAImages.
#include <turbojpeg.h>
