#include "add.h"

int fixture_add(int a, int b) { return a + b + ADD_BIAS; }
