#include "model/tokenizer.hpp"
#include <gtest/gtest.h>
TEST(Tokenizer, Placeholder) {}
