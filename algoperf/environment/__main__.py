import sys

from algoperf.environment.image_record import main

sys.exit(main())
