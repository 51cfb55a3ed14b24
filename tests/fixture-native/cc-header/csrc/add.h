#ifndef ADD_H
#define ADD_H
/* CFLAGS=-DADD_BIAS=n (or the `bias` feature) overrides it. */
#ifndef ADD_BIAS
#define ADD_BIAS 0
#endif
int fixture_add(int a, int b);
#endif
