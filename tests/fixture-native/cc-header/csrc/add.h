#ifndef ADD_H
#define ADD_H
#define ADD_BIAS 0
int fixture_add(int a, int b);
#endif
