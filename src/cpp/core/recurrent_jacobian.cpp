// Jacobian products of the recurrence: placeholder until implemented.
#include "pyjac/recurrent.hpp"
