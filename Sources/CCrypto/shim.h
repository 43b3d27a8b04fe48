// OpenSSL's libcrypto, for SHA-256 of checkpoint files (it uses the CPU's SHA extensions where present).
#include <openssl/evp.h>
