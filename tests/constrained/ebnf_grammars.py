"""Test grammars of the kinds in llama.cpp's grammars/ folder (json, arithmetic, list, chess,
c-like), written here, each with texts in its language and texts out of it."""
from __future__ import annotations

JSON = r"""
# a JSON value at the top, objects and arrays nested to any depth
root   ::= value
value  ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ws ( member ( "," ws member )* )? "}"
member ::= string ws ":" ws value ws
array  ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
ws     ::= [ \t\n]{0,8}
"""

ARITHMETIC = r"""
root   ::= expr
expr   ::= term ( ws [-+] ws term )*
term   ::= factor ( ws [*/] ws factor )*
factor ::= "-"? ( number | "(" ws expr ws ")" | func "(" ws expr ws ")" )
func   ::= "sin" | "cos" | "sqrt"
number ::= [0-9]+ ( "." [0-9]+ )?
ws     ::= " "?
"""

LIST = r"""
root ::= ( "- " item "\n" ){1,10}
item ::= [^\n]+
"""

CHESS = r"""
root    ::= "1. " move " " move "\n" ( [1-9] [0-9]? ". " move " " move "\n" )+
move    ::= ( pawn | nonpawn | castle ) [+#]?
pawn    ::= ( [a-h] "x" )? [a-h] [1-8] ( "=" piece )?
nonpawn ::= piece [a-h]? [1-8]? "x"? [a-h] [1-8]
piece   ::= [NBKQR]
castle  ::= "O-O" ( "-O" )?
"""

C_LIKE = r"""
root        ::= ( declaration )+
declaration ::= type " " ident "(" params? ")" " "? block "\n"
params      ::= param ( ", " param )*
param       ::= type " " ident
type        ::= "int" | "float" | "void" | "char*"
block       ::= "{" "\n" ( indent statement "\n" )* indent "}"
indent      ::= " "*
statement   ::= ( type " " ident " = " expr ";" )
              | ( ident " = " expr ";" )
              | ( "return" ( " " expr )? ";" )
              | ( "while (" expr ") " block )
              | ( "// " [^\n]* )
              | ( expr ";" )
expr        ::= operand ( " " [-+*/<>] " " operand )*
operand     ::= ident ( "(" ( expr ( ", " expr )* )? ")" )? | [0-9]+ | "(" expr ")" | "\"" [^"\n]* "\""
ident       ::= [a-zA-Z_] [a-zA-Z0-9_]*
"""

CASES = {
    "json": (JSON,
             ['{"a": [1, 2.5, {"b": null}], "c": "d\\n\\u00e9"}', "[]", '"é ✓"', "-0.5e+10", "true",
              '{"x": [[[[[[[[[[[[1]]]]]]]]]]]]}', '{ "k" : { } }'],
             ['{"a":}', "[1,]", "01", '"\n"', "{'a': 1}", '{"a": 1', "nul", "[1] x"]),
    "arithmetic": (ARITHMETIC,
                   ["1 + 2", "(1+2)*3", "-sqrt(2.5) / (4 - cos(0))", "((((7))))", "3.14"],
                   ["1 +", "(1", "sin 2", "1..2", "", "2 ** 3"]),
    "list": (LIST, ["- milk\n- eggs and ham\n", "- a\n"], ["- \n", "milk\n", "- a", "- a\n" * 11]),
    "chess": (CHESS,
              ["1. e4 e5\n2. Nf3 Nc6\n3. Bb5 a6\n", "1. d4 d5\n2. c4 dxc4\n3. O-O Qxd1#\n"],
              ["1. e4 e5\n", "1. e9 e5\n2. a3 a4\n", "1. e4 e5\n2. Zf3 a6\n"]),
    "c-like": (C_LIKE,
               ["int main() {\n  int x = 1;\n  while (x < 10) {\n    x = x + 1;\n  }\n  return x;\n}\n",
                'void greet(char* name, int n) {\n  // say hello\n  print("hi", name);\n}\n'],
               ["int main() {\n  x = ;\n}\n", "int main( {\n}\n", "main() {\n}\n"]),
}
