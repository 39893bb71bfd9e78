#include <cblas.h>

// Declared by OpenBLAS but not by every cblas.h.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_corename(void);
