// The .mpl model language (see docs/language.md). The C# parser is generated from this file at build time.
grammar Mpl;

program : decl* EOF ;

decl
    : constDecl
    | meshDecl
    | blockDecl
    | trainDecl
    ;

constDecl : CONST name=ID '=' expr ';' ;

meshDecl : MESH name=ID '[' meshAxis (',' meshAxis)* ']' ';' ;
meshAxis : name=ID '=' expr ;

blockDecl : attribute* kind=(LAYER | MODEL) name=ID '(' (argDecl (',' argDecl)*)? ')' '->' type block ;
attribute : '@' name=ID ('(' (namedArg (',' namedArg)*)? ')')? ;
argDecl   : name=ID ':' type ;

trainDecl : TRAIN model=ID OPTIMIZER opt=ID '(' (namedArg (',' namedArg)*)? ')' (PRECISION prec=ID)? ';' ;

type     : dtype=ID '[' (expr (',' expr)*)? ']' sharding? ;
sharding : SHARD '[' shardDim (',' shardDim)* ']' ;
shardDim
    : ID                            # shardAxis
    | '(' ID (',' ID)* ')'          # shardAxes
    ;

block : '{' stmt* '}' ;

stmt
    : PARAM name=ID ':' type ('=' init=expr)? ';'   # paramStmt
    | LET name=ID '=' expr ';'                      # letStmt
    | name=ID '=' expr ';'                          # assignStmt
    | FOR var=ID IN lo=expr '..' hi=expr block      # forStmt
    | STAGE ';'                                     # stageStmt
    | RETURN expr ';'                               # returnStmt
    ;

// Precedence as in Python: unary minus binds tightest, then * / @, then + -.
expr
    : op='-' expr                                   # negExpr
    | expr op=('*' | '/' | '%' | '@') expr          # mulExpr
    | expr op=('+' | '-') expr                      # addExpr
    | primary                                       # primaryExpr
    ;

primary
    : INT                                           # intLit
    | FLOAT                                         # floatLit
    | (TRUE | FALSE)                                # boolLit
    | STRING                                        # stringLit
    | callee=ID '(' (arg (',' arg)*)? ')'           # callExpr
    | ID                                            # nameExpr
    | '(' expr ')'                                  # parenExpr
    | '[' (expr (',' expr)*)? ']'                   # listExpr
    | SHARD '[' shardDim (',' shardDim)* ']'        # shardExpr
    ;

arg      : namedArg | expr ;
namedArg : name=ID '=' value=expr ;

CONST     : 'const' ;
MESH      : 'mesh' ;
LAYER     : 'layer' ;
MODEL     : 'model' ;
TRAIN     : 'train' ;
OPTIMIZER : 'optimizer' ;
PRECISION : 'precision' ;
PARAM     : 'param' ;
LET       : 'let' ;
FOR       : 'for' ;
IN        : 'in' ;
STAGE     : 'stage' ;
RETURN    : 'return' ;
SHARD     : 'shard' ;
TRUE      : 'true' ;
FALSE     : 'false' ;

ID     : [A-Za-z_] [A-Za-z0-9_]* ;
FLOAT  : DIGITS '.' DIGITS EXPONENT? | DIGITS EXPONENT ;
INT    : DIGITS ;
STRING : '"' (~["\\\r\n] | '\\' ~[\r\n])* '"' ;
UNTERMINATED_STRING : '"' (~["\\\r\n] | '\\' ~[\r\n])* ;
fragment DIGITS   : [0-9]+ ;
fragment EXPONENT : [eE] [+-]? DIGITS ;

LINE_COMMENT  : '//' ~[\r\n]* -> skip ;
BLOCK_COMMENT : '/*' .*? '*/' -> skip ;
// An unterminated block comment runs to the end of the file; the front end reports it where it starts.
UNTERMINATED_COMMENT : '/*' .*? EOF ;
WS : [ \t\r\n\u000C]+ -> skip ;

// Any other character becomes one token that the front end reports, so the lexer never stops early.
ERROR_CHAR : . ;
